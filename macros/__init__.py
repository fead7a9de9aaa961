"""ImageJ macros shipped with ijseg, installed as the data package ``ijseg.macros`` (see ``ijseg._resources``)."""
