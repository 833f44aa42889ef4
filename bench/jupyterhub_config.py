# JupyterHub configuration for `voxhub bench instances --jupyterhub` (run by
# jupyterhub_spawn.py). Everything binds 127.0.0.1; all state lives in JHUB_STATE (a
# temporary folder per run); ports and the benchmark's API token come from the
# environment. The settings are those of the peer measurements in docs/peers.md.
import os
import sys

STATE = os.environ["JHUB_STATE"]
PREFIX = os.environ["JHUB_PREFIX"]

c = get_config()  # noqa: F821

# Network: loopback only.
c.JupyterHub.bind_url = "http://127.0.0.1:%s" % os.environ["JHUB_PORT"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["JHUB_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%s" % os.environ["JHUB_PROXY_API_PORT"]
c.ConfigurableHTTPProxy.command = [os.path.join(PREFIX, "node/node_modules/.bin/configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")
c.Spawner.ip = "127.0.0.1"

# State in the run's folder.
c.JupyterHub.db_url = "sqlite:///" + os.path.join(STATE, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(STATE, "jupyterhub.pid")

# Authentication: dummy; one admin service token for the benchmark's REST calls.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{"name": "bench", "api_token": os.environ["JHUB_ADMIN_TOKEN"]}]
c.JupyterHub.load_roles = [{
    "name": "bench-admin",
    "description": "benchmark driver: create users, start and stop servers, issue user tokens",
    "scopes": ["admin:users", "admin:servers", "tokens", "read:hub", "list:users"],
    "services": ["bench"],
}]

# Every user's server is a local process of the hub's own user, like voxhub's local executor.
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(STATE, "homes/{username}")
c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"]  # the hub runs as root here
c.Spawner.start_timeout = 900
c.Spawner.http_timeout = 900
c.JupyterHub.concurrent_spawn_limit = 1000
c.JupyterHub.active_server_limit = 0
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.log_level = "INFO"
