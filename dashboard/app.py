"""The operator dashboard: ``streamlit run dashboard/app.py``.

The database comes from ``VIGIL_DATABASE__URL``, Kafka (for consumer lag) from
``VIGIL_KAFKA__BOOTSTRAP_SERVERS``, the rest from ``VIGIL_DASHBOARD__*``
(:mod:`dashboard.settings`). Every page needs a login (:mod:`dashboard.auth`). Pages live in
``dashboard/views/``, queries in :mod:`dashboard.queries`.
"""

from __future__ import annotations

import streamlit as st

from dashboard import auth, ui
from streams.store import OperatorRole

st.set_page_config(page_title="Vigil", layout="wide")
who = auth.gate()  # nobody logged in: the login page, and nothing else, is shown
page = st.navigation(
    [
        st.Page(
            "views/fleet.py", title="Fleet overview", icon=":material/directions_car:", default=True
        ),
        st.Page("views/driver.py", title="Driver", icon=":material/monitoring:"),
        st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
        st.Page("views/health.py", title="System health", icon=":material/monitor_heart:"),
    ]
)
auth.account(who)
ui.sidebar(admin=who.may(OperatorRole.ADMIN))
page.run()
