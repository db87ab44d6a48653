"""The device mesh of a parallel layout, in the Llama 3 paper's order [TP, CP, PP, DP].

TP is the innermost dimension (consecutive ranks, i.e. inside a node, where it needs NVLink),
DP the outermost (its reduce-scatters overlap with compute and tolerate the slower network).
"""
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from llamaops.platform.config.parallel import ParallelLayout

# Outermost first, as init_device_mesh wants them.
MESH_DIMS = ("dp", "pp", "cp", "tp")


def mesh_shape(layout: ParallelLayout) -> tuple[int, ...]:
    return tuple(getattr(layout, dim) for dim in MESH_DIMS)


def rescaled(layout: ParallelLayout, world: int) -> ParallelLayout:
    """`layout` on `world` ranks: TP, CP and PP kept, DP whatever is left. A preset's layout names
    its full-scale DP; a smaller or larger run keeps the model-parallel shape."""
    model_parallel = layout.tp * layout.cp * layout.pp
    if world < 1 or world % model_parallel:
        raise ValueError(f"{world} is not a multiple of TP x CP x PP = {model_parallel}; use a multiple of {model_parallel}")
    return layout.model_copy(update={"dp": world // model_parallel})


def build_mesh(layout: ParallelLayout, device_type: str = "cpu") -> DeviceMesh:
    """The mesh of `layout` over the default process group, whose size must be the layout's."""
    world = dist.get_world_size()
    if world != layout.world_size:
        raise ValueError(f"layout {layout.describe()} needs {layout.world_size} processes, got {world}")
    return init_device_mesh(device_type, mesh_shape(layout), mesh_dim_names=MESH_DIMS)
