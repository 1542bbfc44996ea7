"""Grad-CAM overlays and feature maps of a checkpoint; on phantoms, measured explanation quality.

Examples:
    python scripts/visualize.py outputs/demo/checkpoints/cnn_lstm \
        --data_dir outputs/demo/data/radiography
    python scripts/visualize.py outputs/demo/checkpoints/dual_input \
        --data_dir outputs/demo/data/xray_ct --num_images 6 \
        --layers dual_input.xray_encoder.final_feature_map

With synthetic phantoms (a lesion_masks/ folder in --data_dir) the pointing game and the energy
inside lesions are reported, for the chosen layers and for every encoder stage with Grad-CAM and
HiResCAM (explanation_layers.png); with shortcut phantoms (shortcut_markers.csv) the shortcut audit.
See hf_covid.explain.visualize_checkpoint.
"""

import argparse
import json
import sys

from hf_covid.explain import CAM_METHODS, visualize_checkpoint


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint folder or Hub repository id")
    parser.add_argument(
        "--data_dir", required=True, help="dataset root, or a dataset saved with save_to_disk"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--output_dir", default=None, help="default: <checkpoint>/explanations_<split>"
    )
    parser.add_argument("--num_images", type=int, default=4)
    parser.add_argument("--class_name", default="COVID", help="show images of this class")
    parser.add_argument("--layers", nargs="+", default=None, help="Grad-CAM layers (module names)")
    parser.add_argument(
        "--method", choices=sorted(CAM_METHODS), default="gradcam", help="CAM variant"
    )
    parser.add_argument("--feature_layers", nargs="+", default=None, help="feature-map layers")
    parser.add_argument("--max_channels", type=int, default=16)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    results = visualize_checkpoint(
        args.checkpoint,
        data_dir=args.data_dir,
        split=args.split,
        output_dir=args.output_dir,
        num_images=args.num_images,
        class_name=args.class_name,
        target_layers=args.layers,
        feature_layers=args.feature_layers,
        max_channels=args.max_channels,
        method=args.method,
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
