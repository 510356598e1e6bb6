"""The bounds of the command's work: what a value may be before it can only be a slip.

Each bound keeps a typing slip (an extra zero) from starting a run that fills the memory or
never ends; the command refuses the value with a line naming the flag and the bound. The
sampling settings' own bounds live with them, in :data:`tinymuse.sampling.LIMITS`.
"""

MAX_SEED = 2**32 - 1          # the seeds other image tools take, so a seed carries over
MAX_SCALE = 32                # a 64×64 picture becomes 2048×2048
MAX_SIDE = 8192               # pixels per side of any PNG the command writes (200 MB of RGB)
MAX_GIF_PIXELS = 2**27        # pixels of all a --steps-gif's frames together (400 MB of RGB)
MAX_IMAGES = 1024             # images per `generate` command; more is several commands
DRAW_BATCH = 64               # images drawn at once, so memory stays flat for many
MAX_BATCH = 1024              # `eval --batch-size`
# `eval --prompts` is per kind: at ten thousand prompts an accuracy's standard error is at
# most half a percentage point, and further prompts only cost hours.
MAX_EVAL_PROMPTS = 10000
