"""Reports for people: tables, figures and report.html."""
