"""Fiji scripts shipped with ijseg, installed as the data package ``ijseg.fiji_scripts`` (see ``ijseg._resources``)."""
