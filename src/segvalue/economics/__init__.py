"""Economics: segment KPIs with intervals and targets, priorities, response curves, budgets."""
