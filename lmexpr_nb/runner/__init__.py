"""Running the kit: the notebooks headlessly with papermill, the report, JupyterLab, the environment.

    context.py        what a notebook calls first: its config, paths and provenance (NotebookContext)
    run.py            `python -m lmexpr_nb run`: every notebook in order into outputs/<profile>/
    ledger.py         which run made each table, figure and metrics file (run.json's `outputs`)
    report.py         report.md / report.html of a run
    report_tables.py  the compact tables of the report
    lab.py            `make lab`: JupyterLab with the kit's contents manager
    envcheck.py       notebook 00: versions, dlib models, GPU, weights
"""
