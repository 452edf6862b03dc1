"""Online A/B experiments between policies: assignment of users to arms, per-arm statistics valid under
continuous monitoring, the classical fixed-horizon test and sample-size plan, and reports."""
