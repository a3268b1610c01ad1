"""WanCameraEmbedding (ComfyUI's comfy_extras/nodes_camera_trajectory.py): a preset camera move
as the per-pixel Plücker ray embedding that Wan Fun Camera's control adapter reads.

Frame i of n moves the camera by the fraction i / n of ``speed`` times the preset: rotation
angles (x, y, z) in units of 60 degrees, composed as Rz Ry Rx, and a translation in units of
1.5. Each pixel's ray (pinhole intrinsics fx, fy, cx, cy as fractions of the picture, the focal
length adapted from the 1280x720 poses to the output's aspect) becomes (o x d, d): the ray's
moment about the origin and its unit direction, rotated into the first camera's frame.
"""
from __future__ import annotations

import math

from comfyui.nodes.io import io

from ._image_utils import MAX_RESOLUTION
from ._lazy import lazy

torch = lazy("torch")
memory = lazy("comfyui.models.memory")

CAMERA_POSES = {  # name -> (rotation angles x, y, z; translation x, y, z)
    "Static": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    "Pan Up": ((0.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "Pan Down": ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "Pan Left": ((0.0, 0.0, 0.0), (-1.0, 0.0, 0.0)),
    "Pan Right": ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
    "Zoom In": ((0.0, 0.0, 0.0), (0.0, 0.0, 2.0)),
    "Zoom Out": ((0.0, 0.0, 0.0), (0.0, 0.0, -2.0)),
    "Anti Clockwise (ACW)": ((0.0, 0.0, -1.0), (0.0, 0.0, 0.0)),
    "ClockWise (CW)": ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),
}
ANGLE_UNIT, TRANSLATION_UNIT = math.pi / 3, 1.5
POSE_WIDTH, POSE_HEIGHT = 1280, 720   # the size the intrinsics were given for


def _rotation(ax: float, ay: float, az: float) -> torch.Tensor:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def camera_to_world(pose: str, speed: float, frames: int) -> torch.Tensor:
    """[frames, 4, 4] camera-to-world matrices of the preset move, relative to the first."""
    angles, translation = CAMERA_POSES[pose]
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    for i in range(frames):
        f = i / frames * speed
        c2w[i, :3, :3] = _rotation(*(f * ANGLE_UNIT * a for a in angles))
        c2w[i, :3, 3] = torch.tensor([f * TRANSLATION_UNIT * t for t in translation], dtype=torch.float64)
    return torch.linalg.inv(c2w[0]) @ c2w


def plucker_embedding(c2w: torch.Tensor, width: int, height: int, fx: float, fy: float, cx: float,
                      cy: float) -> torch.Tensor:
    """[frames, height, width, 6] (o x d, d) of every pixel centre's ray."""
    if POSE_WIDTH / POSE_HEIGHT > width / height:
        fx = height * POSE_WIDTH / POSE_HEIGHT * fx / width
    else:
        fy = width * POSE_HEIGHT / POSE_WIDTH * fy / height
    fx, fy, cx, cy = fx * width, fy * height, cx * width, cy * height
    rows = torch.arange(height, dtype=torch.float64) + 0.5
    cols = torch.arange(width, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid((rows - cy) / fy, (cols - cx) / fx, indexing="ij")
    d = torch.stack((x, y, torch.ones_like(x)), dim=-1)
    d = d / d.norm(dim=-1, keepdim=True)                                   # [H, W, 3] camera space
    d = torch.einsum("fij,hwj->fhwi", c2w[:, :3, :3], d)                   # world space
    o = c2w[:, None, None, :3, 3].expand_as(d)
    return torch.cat((torch.linalg.cross(o, d, dim=-1), d), dim=-1).float()


class WanCameraEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="WanCameraEmbedding", category="camera",
            inputs=[
                io.Combo.Input("camera_pose", options=list(CAMERA_POSES), default="Static"),
                io.Int.Input("width", default=832, min=16, max=MAX_RESOLUTION, step=16),
                io.Int.Input("height", default=480, min=16, max=MAX_RESOLUTION, step=16),
                io.Int.Input("length", default=81, min=1, max=MAX_RESOLUTION, step=4),
                io.Float.Input("speed", default=1.0, min=0, max=10.0, step=0.1, optional=True),
                io.Float.Input("fx", default=0.5, min=0, max=1, step=0.000000001, optional=True),
                io.Float.Input("fy", default=0.5, min=0, max=1, step=0.000000001, optional=True),
                io.Float.Input("cx", default=0.5, min=0, max=1, step=0.01, optional=True),
                io.Float.Input("cy", default=0.5, min=0, max=1, step=0.01, optional=True),
            ],
            outputs=[io.WanCameraEmbedding.Output(display_name="camera_embedding"),
                     io.Int.Output(display_name="width"), io.Int.Output(display_name="height"),
                     io.Int.Output(display_name="length")])

    @classmethod
    def execute(cls, camera_pose, width, height, length, speed=1.0, fx=0.5, fy=0.5, cx=0.5,
                cy=0.5) -> io.NodeOutput:
        """[1, 24, latent frames, height, width]: like the video's latent frames, the first
        picture's embedding alone (repeated 4 times) and then groups of 4 pictures, each group's
        6 channels x 4 pictures stacked channel-major (channel c, picture k at 4c + k)."""
        if (length - 1) % 4:
            raise ValueError(f"WanCameraEmbedding: length must be 4n + 1 (1, 5, 9, ...), got {length}")
        if fx <= 0 or fy <= 0:
            raise ValueError("WanCameraEmbedding: fx and fy must be above 0")
        rays = plucker_embedding(camera_to_world(camera_pose, speed, length), width, height, fx, fy, cx, cy)
        rays = torch.cat((rays[:1].expand(4, -1, -1, -1), rays[1:]), dim=0)     # [4 * latent frames, H, W, 6]
        groups = rays.reshape(-1, 4, height, width, 6).permute(0, 4, 1, 2, 3)    # [F, 6, 4, H, W]
        embedding = groups.reshape(-1, 24, height, width).transpose(0, 1).unsqueeze(0)
        return io.NodeOutput(embedding.to(memory.intermediate_device()), width, height, length)


NODE_CLASS_MAPPINGS = {"WanCameraEmbedding": WanCameraEmbedding}
