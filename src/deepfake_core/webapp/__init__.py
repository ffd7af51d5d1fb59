"""The web app: a Streamlit page on top of the library.

`streamlit_app.py` is the page (the script Streamlit runs; `deepfake-detect serve` runs it from inside the
installed package, and `app/streamlit_app.py` in a source checkout calls its `main()`). `present.py` holds the
pure logic the page shows: plain-words text, chart and table rows, frames with their face boxes drawn.
Importing this package needs neither Streamlit nor a browser.
"""

from pathlib import Path

PAGE = Path(__file__).resolve().with_name("streamlit_app.py")  # the script `deepfake-detect serve` runs
