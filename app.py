"""SAE feature explorer: `streamlit run app.py`. Registers the pages and runs the one the URL names.

Each page is a thin file in pages/ that starts with `ui.frame.page_frame()` (wide layout, theme, the
sidebar's index picker and source description, and a fix for Streamlit running a page file on its own
before st.navigation has ever been called in the process)."""

from __future__ import annotations

import streamlit as st

from ui import navigation

st.set_page_config(page_title="SAE feature explorer", page_icon=":material/biotech:", layout="wide")
page = st.navigation(navigation.streamlit_pages())
page.run()
