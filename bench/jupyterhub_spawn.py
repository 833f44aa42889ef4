#!/usr/bin/env python3
"""JupyterHub peer of `voxhub bench instances`: N JupyterLab servers requested at once.

  jupyterhub_spawn.py N --prefix PREFIX --config jupyterhub_config.py [--timeout 900] [--settle 5]

Run it with PREFIX/venv/bin/python (see jupyterhub_install.sh). One run: a fresh state
folder; the hub starts (and starts configurable-http-proxy); N users and one API token
each are created; then, at t0, POST /hub/api/users/{name}/server for all N at once (one
thread each). A server counts as ready when GET /user/{name}/api/status *through the
proxy*, with that user's own token, answers 200. New servers are noticed from the
proxy's route table (polled every --poll s), so the hub itself is not loaded by polling.
Memory: RSS from /proc of the hub, the proxy and the single-user servers, sampled every
0.5 s (peaks) and once --settle s after all are ready. Then every server is stopped
(DELETE) and the time until the hub lists no active user is measured; the hub is
stopped (SIGTERM) and every process this run saw under it that is still alive is killed
by PID. Prints one JSON object on the last line of stdout. Everything binds 127.0.0.1.
Derived from the peer scripts in the shared docs (bench_jhub.py).
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def proc_table():
    """pid -> (ppid, starttime, cpu_ticks, rss_bytes)"""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fl = s[s.rfind(")") + 2:].split()
        out[int(d)] = (int(fl[1]), int(fl[19]), int(fl[11]) + int(fl[12]), int(fl[21]) * PAGE)
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(table, root):
    kids = {}
    for pid, v in table.items():
        kids.setdefault(v[0], []).append(pid)
    out, stack = [], [root]
    while stack:
        for k in kids.get(stack.pop(), []):
            out.append(k)
            stack.append(k)
    return out


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def busy_since(start):
    busy, total = machine_ticks()
    return 100.0 * (busy - start[0]) / max(1, total - start[1])


def wait_quiet(max_wait=60):
    t0 = time.time()
    while True:
        start = machine_ticks()
        time.sleep(2)
        busy = busy_since(start)
        if busy <= 15 or time.time() - t0 > max_wait:
            return busy
        print(f"the machine is {busy:.0f} % busy with other work; waiting", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def r2(x):
    return None if x is None else round(x, 2)


class Sampler(threading.Thread):
    """RSS of the hub, the proxy and the single-user servers every `interval` s; remembers
    every descendant PID (with its start time) so that leftovers can be killed by PID."""

    def __init__(self, hub_pid, interval=0.5):
        super().__init__(daemon=True)
        self.hub_pid, self.interval = hub_pid, interval
        self.stop_event = threading.Event()
        self.seen = {}
        self.kind = {}
        self.peak = {"hub": 0, "proxy": 0, "singleuser": 0, "other": 0}
        self.pss = dict(self.peak)
        self.lock = threading.Lock()

    def classify(self, pid):
        if pid not in self.kind:
            c = cmdline(pid)
            if "configurable-http-proxy" in c:
                self.kind[pid] = "proxy"
            elif "jupyterhub-singleuser" in c:
                self.kind[pid] = "singleuser"
            else:
                return "other"  # a kernel, or not executed yet: look again next time
        return self.kind[pid]

    def sample(self, with_pss=False):
        table = proc_table()
        p = {"hub": 0, "proxy": 0, "singleuser": 0, "other": 0}
        rss = {"hub": 0, "proxy": 0, "singleuser": 0, "other": 0}
        cpu = {"hub": 0, "proxy": 0, "singleuser": 0, "other": 0}
        count = {"hub": 0, "proxy": 0, "singleuser": 0, "other": 0}
        if self.hub_pid in table:
            rss["hub"], cpu["hub"], count["hub"] = table[self.hub_pid][3], table[self.hub_pid][2], 1
            if with_pss:
                p["hub"] = pss(self.hub_pid)
        for pid in descendants(table, self.hub_pid):
            k = self.classify(pid)
            rss[k] += table[pid][3]
            cpu[k] += table[pid][2]
            count[k] += 1
            if with_pss:
                p[k] += pss(pid)
            with self.lock:
                self.seen.setdefault(pid, table[pid][1])
        with self.lock:
            for k in rss:
                self.peak[k] = max(self.peak[k], rss[k])
            if with_pss:
                self.pss = p
        return rss, cpu, count

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.sample()
            except Exception:
                pass
            self.stop_event.wait(self.interval)


def kill_by_pid(seen):
    """Kills every recorded process that is still the same one (same start time)."""
    alive = []
    for pid, start in seen.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            if int(s[s.rfind(")") + 2:].split()[19]) == start:
                alive.append(pid)
        except OSError:
            pass
    n = len(alive)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        t = time.time()
        while time.time() - t < 5 and any(os.path.exists(f"/proc/{p}") for p in alive):
            time.sleep(0.2)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}")]
        if not alive:
            break
    return n


def versions(prefix):
    v = {}
    from importlib.metadata import version
    for p in ("jupyterhub", "jupyterlab", "jupyter_server"):
        try:
            v[p] = version(p)
        except Exception:
            pass
    try:
        with open(os.path.join(prefix, "node/node_modules/configurable-http-proxy/package.json")) as f:
            v["configurable-http-proxy"] = json.load(f)["version"]
    except Exception:
        pass
    return v


def one_run(args):
    state = tempfile.mkdtemp(prefix="voxhub-bench-jhub-")
    os.makedirs(os.path.join(state, "homes"))
    port, hub_port, api_port = free_port(), free_port(), free_port()
    while len({port, hub_port, api_port}) < 3:
        hub_port, api_port = free_port(), free_port()
    admin_token, proxy_token = secrets.token_hex(32), secrets.token_hex(32)
    venv_bin = os.path.join(args.prefix, "venv/bin")
    env = dict(os.environ)
    env.update(JHUB_STATE=state, JHUB_PREFIX=args.prefix, JHUB_PORT=str(port), JHUB_HUB_PORT=str(hub_port),
               JHUB_PROXY_API_PORT=str(api_port), JHUB_ADMIN_TOKEN=admin_token,
               CONFIGPROXY_AUTH_TOKEN=proxy_token, PATH=venv_bin + ":" + env.get("PATH", ""))
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": "token " + admin_token}
    users = [f"u{i:03d}" for i in range(1, args.n + 1)]
    rec = {"n": args.n, "versions": versions(args.prefix)}
    log = open(os.path.join(state, "hub.log"), "w")
    launched = time.perf_counter()
    hub = subprocess.Popen([os.path.join(venv_bin, "jupyterhub"), "-f", args.config], cwd=state, env=env,
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sampler = Sampler(hub.pid)
    try:
        while True:
            if hub.poll() is not None:
                raise RuntimeError(f"the hub exited with {hub.returncode}; see {state}/hub.log")
            try:
                if requests.get(base + "/hub/api/", headers=admin, timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.perf_counter() - launched > 120:
                raise RuntimeError("the hub did not answer within 120 s")
            time.sleep(0.1)
        rec["hub_startup_s"] = r2(time.perf_counter() - launched)
        sampler.start()
        r = requests.post(base + "/hub/api/users", headers=admin, json={"usernames": users}, timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"creating users: {r.status_code} {r.text[:300]}")
        user_token = {}
        for u in users:
            r = requests.post(f"{base}/hub/api/users/{u}/tokens", headers=admin, json={"note": "bench"}, timeout=60)
            r.raise_for_status()
            user_token[u] = r.json()["token"]
        rec["machine_busy_pct_before"] = r2(wait_quiet())
        rss, _, _ = sampler.sample()
        rec["hub_rss_mib_idle"] = r2(rss["hub"] / MIB)
        rec["proxy_rss_mib_idle"] = r2(rss["proxy"] / MIB)
        with sampler.lock:
            sampler.peak = {k: 0 for k in sampler.peak}

        # t0: all spawn requests at once.
        post = {}
        barrier = threading.Barrier(args.n + 1)

        def spawn(u):
            barrier.wait()
            try:
                rr = requests.post(f"{base}/hub/api/users/{u}/server", headers=admin, timeout=args.timeout)
                post[u] = (rr.status_code, rr.text[:200] if rr.status_code >= 400 else "")
            except requests.RequestException as e:
                post[u] = (-1, repr(e)[:200])

        threads = [threading.Thread(target=spawn, args=(u,), daemon=True) for u in users]
        for th in threads:
            th.start()
        _, cpu0, _ = sampler.sample()
        load = machine_ticks()
        barrier.wait()
        t0 = time.perf_counter()

        ready, route_seen, failed = {}, {}, {}
        lock = threading.Lock()
        proxy_auth = {"Authorization": "token " + proxy_token}

        def check(u):
            headers = {"Authorization": "token " + user_token[u]}
            last = None
            while time.perf_counter() - t0 < args.timeout:
                try:
                    rr = requests.get(f"{base}/user/{u}/api/status", headers=headers, timeout=30,
                                      allow_redirects=False)
                    if rr.status_code == 200:
                        with lock:
                            ready[u] = time.perf_counter() - t0
                        return
                    last = rr.status_code
                except requests.RequestException as e:
                    last = repr(e)[:100]
                time.sleep(0.1)
            with lock:
                failed[u] = f"no answer through the proxy in time (last {last})"

        checkers = []
        last_hub_poll = t0
        while True:
            now = time.perf_counter()
            try:
                routes = requests.get(f"http://127.0.0.1:{api_port}/api/routes", headers=proxy_auth, timeout=10).json()
                for key in routes:
                    m = re.match(r"^/user/([^/]+)/?$", key)
                    if m and m.group(1) in user_token and m.group(1) not in route_seen:
                        route_seen[m.group(1)] = now - t0
                        th = threading.Thread(target=check, args=(m.group(1),), daemon=True)
                        th.start()
                        checkers.append(th)
            except (requests.RequestException, ValueError):
                pass
            with lock:
                for u, (code, text) in list(post.items()):
                    if code not in (201, 202) and u not in failed and u not in ready:
                        failed[u] = f"POST {code} {text}"
            if now - last_hub_poll > 5:
                last_hub_poll = now
                try:
                    for um in requests.get(f"{base}/hub/api/users?limit=1000", headers=admin, timeout=30).json():
                        u, s = um["name"], um.get("servers", {}).get("")
                        if u in post and u not in route_seen and u not in failed and (
                                s is None or (not s.get("pending") and not s.get("ready"))):
                            with lock:
                                failed[u] = "server neither pending nor ready after the spawn request"
                except (requests.RequestException, ValueError):
                    pass
            with lock:
                done = len(ready) + len(failed)
            if done >= args.n or now - t0 > args.timeout:
                break
            time.sleep(args.poll)
        for th in checkers:
            th.join(timeout=1)
        _, cpu1, _ = sampler.sample()
        rec["machine_busy_pct"] = r2(busy_since(load))
        times = list(ready.values())
        rec.update({
            "ok": len(ready),
            "failed": args.n - len(ready),
            "all_ready_s": r2(max(times)) if len(ready) == args.n else None,
            "first_ready_s": r2(min(times)) if times else None,
            "ready_p50_s": r2(pct(times, 50)),
            "last_ready_s": r2(max(times)) if times else None,
            "hub_cpu_s": r2((cpu1["hub"] - cpu0["hub"]) / HZ),
            "proxy_cpu_s": r2((cpu1["proxy"] - cpu0["proxy"]) / HZ),
            "singleuser_cpu_s": r2((cpu1["singleuser"] - cpu0["singleuser"]) / HZ),
        })
        with sampler.lock:
            rec["hub_rss_mib_peak"] = r2(sampler.peak["hub"] / MIB)
            rec["proxy_rss_mib_peak"] = r2(sampler.peak["proxy"] / MIB)
            rec["singleuser_rss_mib_peak"] = r2(sampler.peak["singleuser"] / MIB)
        if failed:
            rec["failures"] = dict(list(failed.items())[:10])

        time.sleep(args.settle)
        rss, _, count = sampler.sample(with_pss=True)
        rec.update({
            "hub_rss_mib_after": r2(rss["hub"] / MIB),
            "hub_pss_mib_after": r2(sampler.pss["hub"] / MIB),
            "proxy_rss_mib_after": r2(rss["proxy"] / MIB),
            "proxy_pss_mib_after": r2(sampler.pss["proxy"] / MIB),
            "singleuser_rss_mib_after": r2(rss["singleuser"] / MIB),
            "singleuser_pss_mib_after": r2(sampler.pss["singleuser"] / MIB),
            "singleuser_count": count["singleuser"],
        })
        try:
            with open(os.path.join(state, "hub.log")) as f:
                took = [float(x) for x in re.findall(r"User \S+ took ([0-9.]+) seconds to start", f.read())]
            rec["hub_reported_spawn_p50_s"] = r2(pct(took, 50))
        except OSError:
            pass

        stopping = time.perf_counter()
        stoppers = [threading.Thread(target=lambda u=u: requests.delete(
            f"{base}/hub/api/users/{u}/server", headers=admin, timeout=300), daemon=True) for u in users]
        for th in stoppers:
            th.start()
        for th in stoppers:
            th.join(timeout=300)
        while time.perf_counter() - stopping < 300:
            if not requests.get(f"{base}/hub/api/users?state=active&limit=1000", headers=admin, timeout=30).json():
                break
            time.sleep(0.25)
        rec["stop_all_s"] = r2(time.perf_counter() - stopping)
        time.sleep(1.0)
        rss, _, count = sampler.sample()
        rec["hub_rss_mib_end"] = r2(rss["hub"] / MIB)
        rec["singleuser_left_after_stop"] = count["singleuser"]
    except Exception as e:
        rec["error"] = repr(e)[:500]
    finally:
        try:
            sampler.sample()
        except Exception:
            pass
        sampler.stop_event.set()
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(60)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait(10)
        with sampler.lock:
            seen = dict(sampler.seen)
        rec["leftovers_killed"] = kill_by_pid(seen)
        log.close()
        if "error" in rec:
            rec["state_dir"] = state
        else:
            shutil.rmtree(state, ignore_errors=True)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="servers requested at once")
    ap.add_argument("--prefix", required=True, help="where jupyterhub_install.sh installed the peer")
    ap.add_argument("--config", required=True, help="jupyterhub_config.py")
    ap.add_argument("--timeout", type=float, default=900, help="s from t0 until a server counts as failed")
    ap.add_argument("--poll", type=float, default=0.25, help="proxy route-table poll interval, s")
    ap.add_argument("--settle", type=float, default=5, help="s after all-ready before the memory sample")
    args = ap.parse_args()
    if not 1 <= args.n <= 500:
        ap.error("N must be between 1 and 500")
    args.config = os.path.abspath(args.config)
    args.prefix = os.path.abspath(args.prefix)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    print(json.dumps(one_run(args)), flush=True)


if __name__ == "__main__":
    main()
