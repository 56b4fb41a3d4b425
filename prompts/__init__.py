"""The prompt files, shipped as package data so a non-editable install finds them beside ``agent/``.

(Issue 13 will move every installed package under one ``ehr_agent`` namespace; until then this keeps
``pip install .`` working: the loaders read ``<site-packages>/prompts/*.md``.)
"""
