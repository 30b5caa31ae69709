# JupyterLab settings for ONE real-browser smoke test (tests/test_browser.py). Never use them for real work:
# the server listens on the loopback interface only, with no token, no password and no XSRF check.
# Modelled on what jupyterlab.galata.configure_jupyter_server sets (JupyterLab 4.x).
# The test passes LAB_PORT (a free port) and LAB_ROOT (a temporary folder holding a copy of the notebook).
import os
import tempfile

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = int(os.environ.get("LAB_PORT", "8899"))
c.ServerApp.port_retries = 0                       # fail loudly instead of silently taking another port
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True                      # CI machines run as root
c.ServerApp.root_dir = os.environ.get("LAB_ROOT", os.getcwd())
c.IdentityProvider.token = ""
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
c.LabApp.expose_app_in_browser = True              # window.jupyterapp: the command registry, to "Run All"
c.LabApp.workspaces_dir = tempfile.mkdtemp(prefix="isvos-lab-workspaces-")   # never reuse a saved layout
c.LabApp.news_url = None                           # no news fetch (no network on CI)
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
