from report_pipelines.cli import main

main()
