"""The mechinterp explorer: one sentence through the whole pipeline.

    streamlit run apps/explorer.py            (or: mechinterp explore --model smollm2-135m --results out)

The sidebar (built here, on every page) picks a model and a suite item, or a typed sentence with its regions;
each page in ``explorer_pages/`` shows one stage for that item, reading what sweeps and commands already wrote
under the results directory and computing small things on demand with cached models. The logic lives in
:mod:`mechinterp.explore`; the pages only lay it out.
"""

import streamlit as st

from mechinterp.explore import ui

st.set_page_config(page_title="mechinterp explorer", page_icon="🌿", layout="wide")
ui.sidebar()
PAGES = [
    st.Page("explorer_pages/sentence.py", title="Surprisal", default=True),  # served at /
    st.Page("explorer_pages/probes.py", title="Probes", url_path="probes"),
    st.Page("explorer_pages/patching.py", title="Patching", url_path="patching"),
    st.Page("explorer_pages/saes.py", title="SAE features", url_path="saes"),
    st.Page("explorer_pages/collapse.py", title="Collapse", url_path="collapse"),
    st.Page("explorer_pages/humans.py", title="Humans", url_path="humans"),
    st.Page("explorer_pages/predictors.py", title="Beyond surprisal", url_path="predictors"),
    st.Page("explorer_pages/results.py", title="Results found", url_path="results"),
]
st.navigation(PAGES).run()
