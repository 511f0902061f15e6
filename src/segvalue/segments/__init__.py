"""Segmentation: rule schemes, RFM scoring, clusters, profiles, personas, migration.

Table work is written as Ibis expressions over the customer feature table and runs in
the engine; clusters are fitted on a sample in memory and every customer is assigned in
the engine by nearest centroid.
"""
