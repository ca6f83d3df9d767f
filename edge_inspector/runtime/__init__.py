"""The daemon's frame path: grab -> preprocess -> infer -> decide -> publish, and its lifecycle.

``daemon`` builds a generation (models, publishers, line operations) from the config and runs the
``pipeline``; ``decision`` turns model scores into a verdict; ``framesaver`` keeps evidence;
``decodepool`` decodes in parallel; ``sdnotify`` talks to systemd. This room imports the shared
contract (card, preprocess, inference, messages, metrics, config), the plug-in packages (sources,
backends, publishers) and ``lineops``; never the toolchain (train, models, export, evaluate), so the
daemon runs without torch.
"""
