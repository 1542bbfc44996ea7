"""Builders for public chest X-ray and CT collections, and their composition into the task layouts.

One documented builder per collection, in the torchxrayvision manner (each module's docstring
says where the data comes from, its licence, its classes and what is wrong with it):
`build_ieee8023_dataset`, `build_kermany_dataset`, `build_covid_ct_dataset`,
`build_nih_chestxray14_dataset`, `build_covid_cxnet_dataset`, `build_rsna_dataset` and
`build_covidx_dataset` (COVID-Net's benchmark, with its published split); one `PublicCollection`
record each in `PUBLIC_COLLECTIONS`. `compose_radiography`
and `compose_xray_ct` join them into the two layouts the models train on; `prepare_public_data`
writes those layouts as folders; `download_collection` (``hf-covid download``) fetches the openly
downloadable ones; `check_publishable` and `license_counts` guard and describe a push to the Hub.
Research software: none of this makes a data set fit for clinical use.
"""

from .collections import PUBLIC_COLLECTIONS, find_collections, get_collection
from .common import CATEGORY_DESCRIPTIONS, CollectionScan, PublicImage, public_features
from .covid_ct import COVID_CT_CATEGORIES, build_covid_ct_dataset
from .covid_cxnet import COVID_CXNET_CATEGORIES, build_covid_cxnet_dataset
from .covidx import COVIDX_CATEGORIES, build_covidx_dataset
from .download import download_collection
from .ieee8023 import FRONTAL_VIEWS, IEEE8023_CATEGORIES, build_ieee8023_dataset, classify_finding
from .kermany import KERMANY_CATEGORIES, build_kermany_dataset, kermany_patient_id
from .nih_chestxray14 import NIH_CATEGORIES, build_nih_chestxray14_dataset
from .records import DownloadFile, DownloadSource, PublicCollection
from .rsna import RSNA_CATEGORIES, build_rsna_dataset

__all__ = [
    "CATEGORY_DESCRIPTIONS",
    "COVIDX_CATEGORIES",
    "COVID_CT_CATEGORIES",
    "COVID_CXNET_CATEGORIES",
    "FRONTAL_VIEWS",
    "IEEE8023_CATEGORIES",
    "KERMANY_CATEGORIES",
    "NIH_CATEGORIES",
    "PUBLIC_COLLECTIONS",
    "RSNA_CATEGORIES",
    "CollectionScan",
    "DownloadFile",
    "DownloadSource",
    "PublicCollection",
    "PublicImage",
    "build_covid_ct_dataset",
    "build_covid_cxnet_dataset",
    "build_ieee8023_dataset",
    "build_kermany_dataset",
    "build_nih_chestxray14_dataset",
    "build_covidx_dataset",
    "build_rsna_dataset",
    "classify_finding",
    "download_collection",
    "find_collections",
    "get_collection",
    "kermany_patient_id",
    "public_features",
]
