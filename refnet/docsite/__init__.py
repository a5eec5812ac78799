"""The documentation site's own tooling, used by ``refnet docs``, ``docs/hooks.py`` and the
browser tests (needs the ``docs`` extra; nothing in the library imports it):

* ``notebooks``: the lessons executed as notebooks, their stored outputs and whether those
  are still fresh;
* ``browser``: build the site, serve it on 127.0.0.1 and open it in headless Chromium.
"""
