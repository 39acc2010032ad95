#!/usr/bin/env bash
# Desktop app benchmark of issue 18 (docs/BENCHMARKS.md, "Desktop app"): memory of the
# whole process tree (PSS from /proc/*/smaps_rollup: the app and its WebKit children)
# idle with the window shown and hidden to the tray; start to first paint; notification
# latency from a peer's send until the notification server shows it.
#
# Runs the real app under Xvfb with its own session bus, dunst and a
# StatusNotifierWatcher, and a headless peer on loopback. Builds in release.
#   scripts/bench-desktop.sh [--sends N] [--idle-secs S]
# Results: printed, and target/test-artifacts/bench_desktop/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

sends=20
idle=15
while [ $# -gt 0 ]; do
  case "$1" in
    --sends) sends=$2; shift 2 ;;
    --idle-secs) idle=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
scripts/build-ui.sh >/dev/null
cargo build --release -p lanchat -p lanchat-node
bin="$target/release/lanchat"

out=target/test-artifacts/bench_desktop
rm -rf "$out"; mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

n=150; while [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ]; do n=$((n+1)); done
export DISPLAY=":$n"
Xvfb "$DISPLAY" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 & pids+=($!)
export DBUS_SESSION_BUS_ADDRESS="unix:path=$work/bus"
cat >"$work/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>$DBUS_SESSION_BUS_ADDRESS</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>
EOF
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.05; done
dbus-daemon --nofork --config-file="$work/bus.conf" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do [ -e "$work/bus" ] && break; sleep 0.05; done
status-notifier-watcher >/dev/null 2>&1 & pids+=($!)
printf '[global]\n    timeout = 0\n' >"$work/dunstrc"
dunst -config "$work/dunstrc" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do dunstctl count displayed >/dev/null 2>&1 && break; sleep 0.05; done

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_tcp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
da=$(free_port); db=$(free_port)
mkdir -p "$work/a" "$work/b"
settings() { # name discovery other
  cat <<EOF
{"lan_mesh": {"enabled": true, "node_id": "$(python3 -c 'import random,string; print("01"+"".join(random.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24)))')",
 "display_name": "$1", "listen_port": $(free_tcp), "discovery_port": $2, "heartbeat_interval_sec": 1,
 "peer_ttl_sec": 3, "allowed_subnets": ["127.0.0.0/8"], "shared_secret": "bench",
 "peer_addresses": ["127.0.0.1:$3"]}, "ui": {"language": "en-US"}}
EOF
}
settings Desk "$da" "$db" >"$work/a/settings.json"
settings Peer "$db" "$da" >"$work/b/settings.json"

"$bin" serve --data-dir "$work/b" >"$out/peer.log" 2>&1 & pids+=($!)
now() { date +%s.%N; }
shot_spread() { import -window root "$work/shot.png" 2>/dev/null && convert "$work/shot.png" -format '%[fx:standard_deviation]' info: 2>/dev/null || echo 0; }

t0=$(now)
"$bin" window --data-dir "$work/a" >"$out/app.log" 2>&1 & app=$!; pids+=($app)
mapped=""
painted=""
for _ in $(seq 600); do
  if [ -z "$mapped" ] && xdotool search --onlyvisible --name lanchat >/dev/null 2>&1; then mapped=$(now); fi
  if [ -n "$mapped" ]; then
    s=$(shot_spread)
    if python3 -c "import sys; sys.exit(0 if float('$s') > 0.02 else 1)"; then painted=$(now); break; fi
  fi
  sleep 0.05
done
cp "$work/shot.png" "$out/first-paint.png" 2>/dev/null || true

tree_pss() { # KiB of PSS of $1 and all its descendants
  python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
children = {}
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            ppid = int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(p))
        except OSError:
            pass
todo, total, names = [root], 0, []
while todo:
    pid = todo.pop()
    todo += children.get(pid, [])
    try:
        for line in open(f'/proc/{pid}/smaps_rollup'):
            if line.startswith('Pss:'):
                kb = int(line.split()[1]); total += kb
                names.append(f"{open(f'/proc/{pid}/comm').read().strip()}={kb // 1024}MB")
    except OSError:
        pass
print(total, ' '.join(names))
EOF
}

sleep "$idle"
read -r shown_kb shown_parts < <(tree_pss "$app")
win=$(xdotool search --onlyvisible --name lanchat | head -1)
python3 - "$win" <<'EOF'
import ctypes, sys
x = ctypes.cdll.LoadLibrary("libX11.so.6")
x.XOpenDisplay.restype = ctypes.c_void_p; x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong; x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x.XFlush.argtypes = [ctypes.c_void_p]
class Msg(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]
class Event(ctypes.Union):
    _fields_ = [("msg", Msg), ("pad", ctypes.c_long * 24)]
d = x.XOpenDisplay(None); w = int(sys.argv[1]); e = Event()
e.msg.type = 33; e.msg.window = w; e.msg.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
e.msg.format = 32; e.msg.data[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
x.XSendEvent(d, w, 0, 0, ctypes.byref(e)); x.XFlush(d)
EOF
sleep "$idle"
read -r hidden_kb hidden_parts < <(tree_pss "$app")

# Notification latency: the peer posts a DM; dunst shows it. The app's id is the one its
# keys derive, written to its settings at its first start (not the placeholder above).
a_id=$(python3 -c "import json; print(json.load(open('$work/a/settings.json'))['lan_mesh']['node_id'])")
peer_api=$(python3 -c "import json; a=json.load(open('$work/b/api.json')); print(a['url'], a['token'])")
read -r peer_url peer_token <<<"$peer_api"
for _ in $(seq 200); do
  curl -sf -H "Authorization: Bearer $peer_token" "${peer_url}api/v1/contacts" | grep -q "\"peer_id\":\"$a_id\",[^}]*\"online\":true" && break
  sleep 0.1
done
lat=()
for i in $(seq "$sends"); do
  start=$(now)
  curl -sf -o /dev/null -H "Authorization: Bearer $peer_token" -H 'Content-Type: application/json' \
    -d "{\"text\": \"bench $i\"}" "${peer_url}api/v1/conversations/dm:lan:$a_id/messages"
  for _ in $(seq 2000); do
    [ "$(dunstctl count displayed)" -ge 1 ] && break
  done
  lat+=("$(python3 -c "print(round(($(now) - $start) * 1000, 1))")")
  # Closed, the next message starts a new notification rather than replacing it.
  dunstctl close-all
  sleep 0.3
done

{
  echo "date: $(date -u +%F) machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
  echo "start → window mapped: $(python3 -c "print(round(($mapped - $t0) * 1000))") ms"
  echo "start → first paint (UI rendered): $(python3 -c "print(round(($painted - $t0) * 1000))") ms"
  echo "PSS shown (idle ${idle}s): $((shown_kb / 1024)) MB [$shown_parts]"
  echo "PSS hidden to tray (idle ${idle}s): $((hidden_kb / 1024)) MB [$hidden_parts]"
  python3 -c "
import statistics as s
v = sorted(float(x) for x in '${lat[*]}'.split())
print(f'notification latency (peer POST → dunst shows it, polled with dunstctl, n={len(v)}): p50 {s.median(v)} ms, max {v[-1]} ms')"
} | tee "$out/results.txt"
