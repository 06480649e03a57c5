"""Support code of the Streamlit app (``app.py`` + ``pages/``): session state and the query
string (:mod:`.state`), the shared sidebar (:mod:`.sidebar`), cached loaders
(:mod:`.resources`), thin adapters to the library (:mod:`.compute`) and demo prediction folders
for tests and benchmarks (:mod:`.demo`). Pages only arrange widgets and call these and the
library; no science code lives here either.
"""
