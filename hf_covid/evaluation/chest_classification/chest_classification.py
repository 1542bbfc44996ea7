"""The hf_covid classification metrics as an ``evaluate`` module (loadable by path, offline).

    >>> import evaluate
    >>> from hf_covid.evaluation.metrics import EVALUATE_MODULE_PATH
    >>> metric = evaluate.load(str(EVALUATE_MODULE_PATH))
    >>> metric.add_batch(predictions=[[0.8, 0.2], [0.3, 0.7]], references=[0, 1])
    >>> metric.compute(predictions=[[0.6, 0.4]], references=[1],
    ...                class_names=["Non-COVID", "COVID"])["accuracy"]
    0.6666666666666666

The numbers are those of :func:`hf_covid.evaluation.metrics.classification_metrics` (this module
calls it): research software, not a diagnostic device.
"""

import datasets
import evaluate

from hf_covid.evaluation.metrics import classification_metrics

__all__ = ["ChestClassification"]

_DESCRIPTION = """\
Classification metrics of chest X-ray / CT classifiers from class probabilities: accuracy,
balanced accuracy, per-class and macro precision, recall (sensitivity), specificity and F1,
COVID sensitivity and PPV, one-vs-rest ROC-AUC and PR-AUC, expected calibration error (15 bins)
and the confusion matrix. Computed by hf_covid.evaluation.metrics.classification_metrics.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: class probabilities, one list of n_classes floats per sample (the predicted
        class is their argmax).
    references: true class ids (ints in [0, n_classes)).
    class_names: names of the classes in id order, e.g. ["COVID", "Lung_Opacity", "Normal",
        "Viral Pneumonia"] or ["Non-COVID", "COVID"] (required).
    positive_class: the class reported as covid_sensitivity / covid_ppv and used for binary
        ROC/PR (default "COVID").
Returns:
    A flat dict: accuracy, balanced_accuracy, precision_<class>, recall_<class>,
    specificity_<class>, f1_<class>, their _macro means, covid_sensitivity, covid_ppv, roc_auc,
    pr_auc (and per class), ece, confusion_matrix (rows true, columns predicted), n_samples.
    Undefined values (e.g. ROC-AUC of a class absent from the references) are None.
"""

_CITATION = """\
@software{hf_covid,
  title = {hf_covid: Hugging Face-native COVID-19 chest imaging},
  note = {Research software, not a diagnostic device},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ChestClassification(evaluate.Metric):
    """Chest X-ray / CT classification metrics from class probabilities."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self,
        predictions: list[list[float]],
        references: list[int],
        class_names: list[str] | None = None,
        positive_class: str = "COVID",
    ) -> dict:
        if not class_names:
            raise ValueError(
                "chest_classification: pass class_names (the class names in id order) to compute"
            )
        return classification_metrics(references, predictions, class_names, positive_class)
