#!/bin/bash
# Starts a private Orthanc (Debian package, with its DICOMweb plugin) for
# `voxhub bench imaging --orthanc`, with all of its state in DIR: the configuration
# DIR/orthanc.json, the DICOM files and the SQLite index in DIR/db, the log DIR/orthanc.log
# and the PID file DIR/orthanc.pid. Stop it with orthanc_stop.sh DIR.
#
#   orthanc_start.sh DIR HTTP_PORT DICOM_PORT
#
# HTTP without authentication; RemoteAccessAllowed=false refuses every client that is not
# on loopback (Orthanc 1.10 has no option to bind one address only). KeepAlive and
# TcpNoDelay on the HTTP server, and TCP_NODELAY=1 in Orthanc's environment so that DCMTK
# disables Nagle on its DICOM sockets too. No storage compression, no job persistence;
# everything else as shipped (SQLite index, fsync of each stored file, StorageAccessOnFind
# "Always"). ORTHANC_STORAGE_ACCESS_ON_FIND=Never|Answers|Always overrides the last.
#
# The neuroimaging plugin (orthanc-neuro: GET /series/{id}/nifti) is loaded when installed.
#
# The system's own Orthanc service (/etc/orthanc) is never used or changed; if the
# package's installation started it, it is stopped so that it does not compete for the
# cores (`systemctl start orthanc` brings it back).
#
# Prints "orthanc pid PID http 127.0.0.1:HTTP_PORT dicom DICOM_PORT version V" when up.
# Exit codes: 0 up; 3 Orthanc or its DICOMweb plugin is not installed; 1 it did not come up.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 DIR HTTP_PORT DICOM_PORT" >&2
  exit 2
fi
DIR=$1 HTTP_PORT=$2 DICOM_PORT=$3
ORTHANC=$(PATH=$PATH:/usr/sbin command -v Orthanc || true)
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if [ -z "$ORTHANC" ] || [ ! -f "$PLUGIN" ]; then
  echo "Orthanc with its DICOMweb plugin is not installed." >&2
  echo "Install it with: apt-get install -y orthanc orthanc-dicomweb   (Debian/Ubuntu), then run the benchmark again." >&2
  exit 3
fi
PLUGINS="\"$PLUGIN\""
NEURO=/usr/share/orthanc/plugins/libOrthancNeuro.so
[ -f "$NEURO" ] && PLUGINS="$PLUGINS, \"$NEURO\""
command -v curl >/dev/null 2>&1 || { echo "orthanc_start.sh needs curl (apt-get install -y curl)" >&2; exit 3; }

# The packaged service, if the installation started it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  echo "stopping the system's Orthanc service (systemctl start orthanc brings it back)" >&2
  systemctl stop orthanc
elif [ -f /run/orthanc.pid ] && kill -0 "$(cat /run/orthanc.pid)" 2>/dev/null; then
  echo "stopping the system's Orthanc service (service orthanc start brings it back)" >&2
  service orthanc stop >/dev/null 2>&1 || invoke-rc.d orthanc stop >/dev/null 2>&1 || true
fi

mkdir -p "$DIR/db"
DIR=$(cd "$DIR" && pwd)
if [ -f "$DIR/orthanc.pid" ] && kill -0 "$(cat "$DIR/orthanc.pid")" 2>/dev/null; then
  echo "an Orthanc started from $DIR already runs (pid $(cat "$DIR/orthanc.pid"))" >&2
  exit 1
fi
cat > "$DIR/orthanc.json" <<JSON
{
  "Name" : "voxhub-bench",
  "StorageDirectory" : "$DIR/db",
  "IndexDirectory" : "$DIR/db",
  "StorageCompression" : false,
  "HttpServerEnabled" : true,
  "HttpPort" : $HTTP_PORT,
  "RemoteAccessAllowed" : false,
  "AuthenticationEnabled" : false,
  "KeepAlive" : true,
  "TcpNoDelay" : true,
  "OrthancExplorerEnabled" : false,
  "WebDavEnabled" : false,
  "DicomServerEnabled" : true,
  "DicomAet" : "ORTHANC",
  "DicomPort" : $DICOM_PORT,
  "DicomCheckCalledAet" : false,
  "DicomAlwaysAllowEcho" : true,
  "DicomAlwaysAllowStore" : true,
  "DicomAlwaysAllowFind" : false,
  "DicomAlwaysAllowGet" : false,
  "DicomAlwaysAllowMove" : false,
  "DicomModalities" : {},
  "SaveJobs" : false,
  "StorageAccessOnFind" : "${ORTHANC_STORAGE_ACCESS_ON_FIND:-Always}",
  "Plugins" : [ $PLUGINS ],
  "DicomWeb" : { "Enable" : true, "Root" : "/dicom-web/", "EnableWado" : true, "WadoRoot" : "/wado", "Host" : "127.0.0.1:$HTTP_PORT", "Ssl" : false }
}
JSON
cd "$DIR"
TCP_NODELAY=1 nohup "$ORTHANC" "$DIR/orthanc.json" > "$DIR/orthanc.log" 2>&1 < /dev/null &
echo $! > "$DIR/orthanc.pid"
PID=$(cat "$DIR/orthanc.pid")
for _ in $(seq 1 150); do
  if VERSION=$(curl -sf --max-time 2 "http://127.0.0.1:$HTTP_PORT/system" 2>/dev/null); then
    VERSION=$(printf '%s' "$VERSION" | sed -n 's/.*"Version" *: *"\([^"]*\)".*/\1/p' | head -1)
    echo "orthanc pid $PID http 127.0.0.1:$HTTP_PORT dicom $DICOM_PORT version ${VERSION:-?}"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
echo "Orthanc did not come up; the end of $DIR/orthanc.log:" >&2
tail -20 "$DIR/orthanc.log" >&2
kill "$PID" 2>/dev/null || true
rm -f "$DIR/orthanc.pid"
exit 1
