"""The web page, for `streamlit run app/streamlit_app.py` in a source checkout.

The page itself ships inside the package (deepfake_core/webapp/streamlit_app.py) so that an installed copy
(`pip install .`, the Docker image) can serve it with `deepfake-detect serve`; this file runs that same page.
Server options (the 500 MB upload cap, ...) are in app/.streamlit/config.toml.
"""

from deepfake_core.webapp.streamlit_app import main

main()
