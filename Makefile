# The two README commands. Both set up .venv from requirements.txt first.
.PHONY: run test setup

setup:
	scripts/setup.sh

run: setup
	.venv/bin/python manage.py start

test:
	scripts/test.sh
