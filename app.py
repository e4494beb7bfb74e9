"""SAE feature explorer: `streamlit run app.py`. The entrypoint, Streamlit's "picture frame" around every page:
it registers the pages, sets the browser title and wide layout once for all of them, and runs the page the URL
names. Each page is a thin file in pages/ that starts with `ui.frame.page_frame()` (theme, sign-in, and the
sidebar's index picker and source description)."""

from __future__ import annotations

import streamlit as st

from ui import frame, navigation

page = st.navigation(navigation.streamlit_pages())
st.set_page_config(page_title="SAE feature explorer", page_icon=":material/biotech:", layout="wide")
with frame.entrypoint():
    page.run()
