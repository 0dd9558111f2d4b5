"""The dashboard's pages, one module each. Streamlit runs each file as a page script
(``__name__ == "__main__"``), which calls its ``render()``."""
