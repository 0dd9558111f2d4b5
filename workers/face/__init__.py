"""The face engine: backends behind one interface, tracking, driver selection, crops.

Import from the modules: the interface, tracking and driver selection from
:mod:`workers.face.engine`, the backends by name (``create_backend``) from
:mod:`workers.face.backends`, crops from :mod:`workers.face.crops`. This package module
imports none of them, so importing any one of them never loads the others.
"""
