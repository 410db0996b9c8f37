"""What the explorer found under the results directory."""

import streamlit as st

from mechinterp.explore import ui

sel = ui.selection()
st.title("Results found")
with ui.guard("results"):
    cat = ui.catalogue(sel)
    if cat is not None:
        st.caption(f"Under {cat.root}")
        if cat.empty:
            st.info("Nothing the explorer can show was found here. Write results with e.g. `mechinterp patch`, "
                    "`mechinterp sweep sweeps/quick.toml`, `mechinterp sae train`, `mechinterp collapse`, "
                    "`mechinterp compare --save-linking`.")
        else:
            st.dataframe(cat.summary(), hide_index=True)
        for note in cat.notes:
            st.warning(note)
