"""The scheduled-reports area: build, send and clean report files, and the sensors that drive them."""

import dagster as dg

from report_pipelines.defs.schedules.jobs import clean_report_files_job, process_report_file_job, send_report_files_job
from report_pipelines.defs.schedules.sensors import (
    clean_report_files_schedule,
    report_file_processor_sensor,
    report_file_sender_sensor,
    schedule_planner_sensor,
)

defs = dg.Definitions(
    jobs=[process_report_file_job, send_report_files_job, clean_report_files_job],
    sensors=[schedule_planner_sensor, report_file_processor_sensor, report_file_sender_sensor],
    schedules=[clean_report_files_schedule],
)
