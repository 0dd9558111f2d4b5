"""The read API for fleet systems (`vigil api`): alerts, the fleet, drivers' time series and
exports over HTTP, with hashed API keys; it reads through the store and the dashboard's
queries, so it says what the dashboard says.

    app = api.app.create_app(store)     # a FastAPI app; `vigil api` serves it with uvicorn
"""
