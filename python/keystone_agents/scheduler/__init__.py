"""The scheduler: SCHEDULES.yaml and calendars become tasks, on time, once."""
