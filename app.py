"""SteadyDancer studio -- the Gradio app's entry point (and the Hugging Face Space's ``app_file``).

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--model PATH_OR_REPO_ID] [--offline]

The same file runs locally, behind a share link and on a ZeroGPU Space. The app itself lives in the
``studio`` package; this file reads the configuration, builds the page and launches it.
"""

# ZeroGPU: `spaces` must be imported before anything initialises CUDA (torch included).
import spaces  # noqa: F401  isort: skip

import argparse
import logging
import os

from studio import AppConfig, Studio, create_demo, launch_kwargs
from studio.runtime import preload
from studio.shutdown import serve_until_stopped


def parse_args(argv=None, config: AppConfig | None = None) -> tuple[argparse.Namespace, AppConfig]:
    """The command line over the environment's configuration."""
    config = config or AppConfig.from_env()
    parser = argparse.ArgumentParser(description="SteadyDancer studio (Gradio app)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for the local network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--model", default=None, help=f"model folder, Hugging Face repo id or GGUF transformer file (x.gguf, repo::x.gguf; "
                        f"default {config.model})")
    parser.add_argument("--encoders", default=None,
                        help="Wan2.1-I2V diffusers folder or repo id for the VAE / UMT5 / CLIP (when --model has none)")
    parser.add_argument("--offline", action="store_true", help="never download: local files / the HF cache only")
    parser.add_argument("--device", default=None, help="torch device for generation (default: cuda if available)")
    parser.add_argument("--devices", default=None, metavar="all|cuda:0,cuda:1,...",
                        help="several GPUs: one pipeline per GPU, that many generations at once behind the one queue")
    parser.add_argument("--resolution", action="append", default=[], metavar="NAME=WxH",
                        help="add a resolution class, e.g. tiny=64x64 for a small test model (repeatable)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.resolution:
        try:
            name, size = item.split("=", 1)
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            parser.error(f"--resolution wants NAME=WxH, got {item!r}")
        extra[name] = (w * h, 3.0 if w * h <= 832 * 480 else 5.0)
    changes = {key: value for key, value in (("model", args.model), ("encoders", args.encoders),
                                             ("device", args.device)) if value}
    if args.devices:
        from studio.config import parse_devices

        try:
            changes["devices"] = parse_devices(args.devices)
        except ValueError as exc:
            parser.error(str(exc))
    if args.offline:
        changes["offline"] = True
    return args, config.replace(**changes).with_resolutions(extra)


def main(argv=None) -> None:
    args, config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config.zero_gpu:
        preload(config)
    studio = Studio(config)
    demo = create_demo(studio)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True,
                **launch_kwargs(studio))
    serve_until_stopped(demo, studio)  # Ctrl-C / SIGTERM: waiting clients are told, then the server closes


if __name__ == "__main__":
    import sys

    from steadydancer.errors import SteadyDancerInputError

    try:
        main()
    except SteadyDancerInputError as exc:  # a setting the operator can fix: one line, exit status 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
