"""Synthetic behaviour logs with planted structure; see docs/synthetic.md."""
from synthetic.affinity import ctr_affinity, cvr_affinity
from synthetic.dataset import GenerationSummary, generate, raw_frames
from synthetic.users import user_interests
from synthetic.world import World, build_world

__all__ = ["GenerationSummary", "World", "build_world", "ctr_affinity", "cvr_affinity", "generate",
           "raw_frames", "user_interests"]
