"""--oneshot with a peer the configuration disables (issue 12, part 1): the file runs as
stunmesh-go would run it, and the disabled peer neither blocks nor fails the round."""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.lab.mesh import MeshLab

pytestmark = pytest.mark.root


async def test_oneshot_succeeds_beside_a_disabled_peer() -> None:
    async with MeshLab() as mesh:
        a, b = mesh.a, mesh.b
        config = mesh.config_for(a, b)
        ((iface,),) = [config["interfaces"].values()]
        iface["peers"]["PEER_X"] = {"public_key": "<PEER_X_PUBLIC_KEY_BASE64>", "plugin": "lab"}
        mesh.write_config(a, config)
        await mesh.start_daemons("--oneshot")
        codes = await asyncio.gather(
            *(
                asyncio.wait_for(n.process.wait(), 40)  # type: ignore[union-attr]
                for n in mesh.nodes.values()
            )
        )
        assert codes == [0, 0], [n.log_text()[-2000:] for n in mesh.nodes.values()]
        assert "peers.PEER_X: peer disabled: public_key is not valid base64" in a.log_text()
