"""Reports rendered from Findings: structured text, HTML; later narrative and fact checking."""
