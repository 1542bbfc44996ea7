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
See hf_covid.explain.visualize_checkpoint; same as ``hf-covid explain``.
"""

import sys

from hf_covid.explain.visualize import main

if __name__ == "__main__":
    sys.exit(main())
