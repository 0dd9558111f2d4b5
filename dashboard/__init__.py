"""The Streamlit operator dashboard: ``streamlit run dashboard/app.py`` (or
:func:`dashboard.launch.start_dashboard`). Pages in ``views/``, every query in ``queries``."""
