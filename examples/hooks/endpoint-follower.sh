#!/bin/sh
# Follow stunmeshd's EndpointChanged signal and run a command each time our public endpoint
# moves — the hook for routing daemons (FRR, BIRD) and scripts.
#
#   endpoint-follower.sh 'vtysh -c "clear ip bgp * soft out"'     # FRR
#   endpoint-follower.sh 'birdc reload out all'                    # BIRD
#
# The command gets the device's object path and its endpoints in STUNMESH_DEVICE and
# STUNMESH_ENDPOINTS (e.g. "['198.51.100.10:40000']"). Needs only read access to the bus.
set -eu
command=${1:?usage: endpoint-follower.sh COMMAND}
gdbus monitor --system --dest io.github.stunmeshd.StunMesh1 |
while read -r path signal endpoints; do
  case "$signal" in
    io.github.stunmeshd.StunMesh1.Device.EndpointChanged)
      STUNMESH_DEVICE=${path%:} STUNMESH_ENDPOINTS=$endpoints sh -c "$command"
      ;;
  esac
done
