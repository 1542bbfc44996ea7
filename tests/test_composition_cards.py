"""The card of a model trained on a composition of the public collections tells the truth about
its data: the collections with their counts and licences, the strata, the notes, the lung crop,
a licence derived from the images', per-source numbers and the study's probes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_model_card import _checkpoint, _results

from hf_covid.card_data import CODE_LICENSE, OTHER_LICENSE_NAME, card_license
from hf_covid.checkpoint_results import StudyProbes
from hf_covid.checkpoints import STUDY_PROBES_FILE, DatasetRecord
from hf_covid.data.public.collections import PUBLIC_COLLECTIONS
from hf_covid.model_card import render_model_card, write_model_card

STRATA = [
    {"class": "COVID", "source": "ieee8023", "age_group": "adult", "view": "PA", "images": 45},
    {"class": "COVID", "source": "ieee8023", "age_group": "unknown", "view": "AP", "images": 15},
    {"class": "Normal", "source": "kermany", "age_group": "pediatric", "view": "PA", "images": 40},
]
LUNG_OPACITY_NOTE = (
    "Lung_Opacity from NIH ChestX-ray14 adult 'Pneumonia': the nearest public source (the "
    "Radiography database took its Lung_Opacity images from the RSNA challenge)."
)


def _composition(**fields) -> DatasetRecord:
    values = {
        "kind": "radiography",
        "name": "Public collections in the Radiography label set",
        "source": "public_data",
        "split_sizes": {"train": 70, "validation": 15, "test": 15},
        "sources": {"ieee8023": 60, "kermany": 40},
        "licenses": {"CC BY 4.0": 40, "CC BY-NC-SA 4.0": 35, "Apache 2.0": 25},
        "strata": STRATA,
        "notes": ["Composition 'pediatric_controls': the first study's.", LUNG_OPACITY_NOTE],
    }
    return DatasetRecord(**(values | fields))


def _composition_checkpoint(folder: Path, **fields) -> Path:
    results = _results(
        metrics={"accuracy": 0.94, "covid_sensitivity": 0.97, "n_samples": 15},
        confidence_intervals={"accuracy": [0.88, 0.99]},
        interval_unit="patient",
        dataset=_composition(**fields),
        per_source={
            "ieee8023": {"n_samples": 9, "accuracy": 0.93, "covid_sensitivity": 0.97},
            "kermany": {"n_samples": 6, "accuracy": 0.95, "covid_sensitivity": None},
        },
        per_age_group={"pediatric": {"n_samples": 6, "accuracy": 0.95}},
    )
    return _checkpoint(folder, eval_results=results)


def _front_matter(text: str) -> dict:
    return yaml.safe_load(text.split("---")[1])


def test_a_composition_card_names_its_collections_counts_licences_strata_and_notes(tmp_path):
    text = str(render_model_card(_composition_checkpoint(tmp_path)))

    data = text[text.index("## Training data") : text.index("## Training procedure")]
    ieee, kermany = PUBLIC_COLLECTIONS["ieee8023"], PUBLIC_COLLECTIONS["kermany"]
    assert f"| [{ieee.title}]({ieee.url}) (`ieee8023`) | 60 | {ieee.license} |" in data
    assert f"| [{kermany.title}]({kermany.url}) (`kermany`) | 40 | {kermany.license} |" in data
    assert "**Public collections in the Radiography label set**" in data
    assert "| COVID | ieee8023 | unknown | AP | 15 |" in data
    assert f"- {LUNG_OPACITY_NOTE}" in data
    assert "`Normal` (40 images): kermany 100%; pediatric 100%; views PA 100%" in data
    # Not the Kaggle database: no link to it, none of its problems, none of its papers.
    assert "kaggle.com" not in text and "Pediatric controls" not in text
    assert "10.1109/ACCESS.2020.3010287" not in text
    assert f"- [{ieee.title}]({ieee.url})" in text[text.index("## Citation") :]
    licence = text[text.index("## License") :]
    assert "| CC BY-NC-SA 4.0 | 35 | non-commercial (NC) |" in licence
    assert "| CC BY 4.0 | 40 | open licence |" in licence
    assert "(100 images)" in licence and "Apache-2.0" in licence  # the code's licence stays


def test_a_composition_card_says_its_internal_numbers_are_no_evidence(tmp_path):
    text = str(render_model_card(_composition_checkpoint(tmp_path)))

    assert "Research use only" in text and "not a medical device" in text
    warning = text[text.index("> [!WARNING]") : text.index("## Model description")]
    assert "internal numbers are not evidence" in warning
    assert "`hf-covid study` measures" in warning  # no probes stored: where to get them


def test_nc_training_images_make_the_card_licence_nc(tmp_path):
    card = render_model_card(_composition_checkpoint(tmp_path))

    assert card.data.license == "cc-by-nc-sa-4.0" != CODE_LICENSE
    assert "license_name" not in _front_matter(str(card))
    assert "declares\n`license: cc-by-nc-sa-4.0`" in str(card)


def test_unstated_image_licences_make_the_card_licence_other(tmp_path):
    folder = _composition_checkpoint(
        tmp_path, licenses={"CC BY-NC-ND 4.0": 12, "not stated": 239, "CC BY 3.0": 92}
    )

    card = render_model_card(folder, repo_id="me/covid-cnn-lstm")

    metadata = _front_matter(str(card))
    assert metadata["license"] == "other"
    assert metadata["license_name"] == OTHER_LICENSE_NAME
    assert metadata["license_link"].endswith("/me/covid-cnn-lstm#license")
    assert "239 training images have a licence that is not stated" in str(card)
    assert "| not stated | 239 | not stated (unknown) |" in str(card)


@pytest.mark.parametrize(
    ("licenses", "expected", "restricted"),
    [
        ({}, CODE_LICENSE, set()),
        ({"CC BY 4.0": 3, "Apache 2.0": 2, "CC0": 1}, CODE_LICENSE, set()),
        ({"CC BY 4.0": 3, "CC BY-NC 4.0": 2}, "cc-by-nc-4.0", {"CC BY-NC 4.0"}),
        (
            {"CC BY-NC-SA 4.0": 5, "CC BY-NC-ND 4.0": 1, "CC BY 4.0": 2},
            "cc-by-nc-nd-4.0",
            {"CC BY-NC-SA 4.0", "CC BY-NC-ND 4.0"},
        ),
        ({"CC BY-NC 4.0": 5, "CC BY-SA 4.0": 1}, "other", {"CC BY-NC 4.0"}),  # none covers all
        ({"CC BY-NC-SA": 5}, "other", {"CC BY-NC-SA"}),  # no version: no Hub id
        (
            {"CC BY-NC-SA 4.0": 5, "listed as authorized for everyone": 1},
            "other",
            {"CC BY-NC-SA 4.0", "listed as authorized for everyone"},
        ),
    ],
)
def test_the_card_licence_is_the_most_restrictive_image_licence(licenses, expected, restricted):
    derived = card_license(licenses)

    assert derived.license == expected
    assert (derived.name == OTHER_LICENSE_NAME) is (expected == "other")
    assert derived.restricted == {name: licenses[name] for name in restricted}


def test_the_card_carries_per_source_numbers_the_interval_unit_and_the_lung_crop(tmp_path):
    crop = {
        "segmenter": "lung_unet",
        "margin": 0.08,
        "images": {"train": 70, "validation": 15, "test": 15},
        "uncropped": {
            "train": {"empty mask": 2},
            "validation": {},
            "test": {"mask covers the image": 1},
        },
    }
    text = str(render_model_card(_composition_checkpoint(tmp_path, lung_crop=crop)))

    assert "| ieee8023 | 9 | 0.930 | 0.970 |" in text
    assert "| kermany | 6 | 0.950 | – |" in text  # no COVID image there: undefined, not 0
    assert "| pediatric | 6 | 0.950 |" in text
    assert "The intervals resample patients" in text
    assert "U-Net `lung_unet`" in text and "widened by\n0.08 of the box" in text
    assert "**3 images were left uncropped**" in text
    assert "(train: 2 empty mask; test: 1 mask covers the image)" in text


def test_a_mask_model_card_says_which_masks_it_was_evaluated_with(tmp_path):
    results = _results(
        model_type="covid_dual_channel",
        metrics={"accuracy": 0.8},
        masks="made by the checkpoint's lung U-Net (lung_segmenter)",
    )
    folder = _checkpoint(tmp_path, "covid_dual_channel", eval_results=results)

    text = str(render_model_card(folder))

    assert "Lung masks of this evaluation: made by the checkpoint's lung U-Net" in text


def _probes() -> StudyProbes:
    return StudyProbes(
        configuration="2_lung_crop",
        title="Adult controls + lung crop",
        model="cnn_lstm",
        collection_probe=[
            {
                "region": "whole",
                "metrics": {"balanced_accuracy": 0.91, "roc_auc": 0.98},
                "confidence_intervals": {"roc_auc": [0.96, 0.99]},
            },
            {"region": "outside_lungs", "metrics": {"balanced_accuracy": 0.62, "roc_auc": 0.81}},
        ],
        lungs_only={"accuracy_drop": 0.21, "accuracy_drop_interval": [0.12, 0.3]},
        hospital_films={
            "n_films": 114,
            "n_controls": 40,
            "trained_without_films": True,
            "metrics": {"covid_sensitivity": 0.5, "specificity_COVID": 0.72, "roc_auc_COVID": 0.63},
            "confidence_intervals": {"covid_sensitivity": [0.4, 0.6]},
        },
        leave_one_source_out=[
            {
                "source": "radiopaedia.org",
                "n_held_out_covid": 31,
                "held_out_source": {"metrics": {"covid_sensitivity": 0.42, "roc_auc": 0.61}},
                "in_distribution": {"metrics": {"roc_auc": 0.95}},
            }
        ],
    )


def test_the_study_probes_written_with_a_checkpoint_go_on_its_card(tmp_path):
    folder = _composition_checkpoint(tmp_path)
    _probes().save(folder / STUDY_PROBES_FILE)

    text = write_model_card(folder).read_text()

    probes = text[text.index("## Study probes") : text.index("## Intended use")]
    assert "**Adult controls + lung crop** (`2_lung_crop`)" in probes
    assert "| whole | 0.910 | 0.980 (0.960 – 0.990) |" in probes
    assert "| outside lungs | 0.620 | 0.810 |" in probes
    assert "blanked: 0.210 (0.120 – 0.300)" in probes
    assert "| radiopaedia.org | 31 | 0.420 | 0.610 | 0.950 |" in probes
    assert "114 adult COVID films" in probes and "trained without those films" in probes
    assert "COVID sensitivity 0.500 (0.400 – 0.600)" in probes
    warning = text[text.index("> [!WARNING]") : text.index("## Model description")]
    assert "[study's probes](#study-probes)" in warning


def test_study_probes_round_trip_and_name_a_bad_file(tmp_path):
    path = _probes().save(tmp_path / STUDY_PROBES_FILE)
    assert StudyProbes.read(tmp_path) == _probes()
    assert StudyProbes.read(tmp_path / "elsewhere") is None

    path.write_text('{"configuration": "x", "collection_probe": [{"metrics": {}}]}')
    with pytest.raises(ValueError, match=r"study_probes.json 'collection_probe': each row needs"):
        StudyProbes.read(tmp_path)
    path.write_text('{"lungs_only": {}}')
    with pytest.raises(ValueError, match="'configuration' must name"):
        StudyProbes.read(tmp_path)


def test_study_probes_from_a_configuration_of_the_study_results():
    scores = {"metrics": {"roc_auc": 0.9, "balanced_accuracy": 0.8}, "confidence_intervals": {}}
    configuration = {
        "key": "1_adult_controls",
        "title": "Adult controls and hospital COVID films",
        "collection_probe": {
            "collections": ["a", "b"],
            "conditions": [{"region": "whole", **scores}],
        },
        "leave_one_source_out": {
            "held_out": [
                {"source": "covid_cxnet", "n_held_out_covid": 114, "held_out_source": scores}
            ]
        },
        "models": {
            "resnet": {
                "lungs_only": {
                    "conditions": [
                        {"region": "whole", **scores},
                        {
                            "region": "lungs_only",
                            "accuracy_drop": 0.3,
                            "accuracy_drop_interval": [0.2, 0.4],
                        },
                    ]
                },
                "hospital_films": {"n_films": 114, "n_controls": 40, **scores},
                "hospital_films_train_wall_s": 12.0,
            }
        },
    }

    probes = StudyProbes.from_study_results(configuration, "resnet")

    assert probes.configuration == "1_adult_controls" and probes.model == "resnet"
    assert probes.collection_probe == [{"region": "whole", **scores}]
    assert probes.lungs_only == {"accuracy_drop": 0.3, "accuracy_drop_interval": [0.2, 0.4]}
    assert probes.hospital_films["trained_without_films"] is True
    assert probes.leave_one_source_out[0]["source"] == "covid_cxnet"
    assert StudyProbes.from_dict(probes.to_dict()) == probes
    with pytest.raises(ValueError, match="has no results for 'cnn_lstm'"):
        StudyProbes.from_study_results(configuration, "cnn_lstm")
