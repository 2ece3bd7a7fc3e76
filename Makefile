# Test and local-broker commands; the scripts under scripts/ say what they do and which variables they read.

.PHONY: test replay brokers-start brokers-stop brokers-status

# make test PYTEST_ARGS="-k smoke -x" passes arguments on to pytest.
test:
	bash scripts/test.sh $(PYTEST_ARGS)

brokers-start:
	bash scripts/brokers.sh start

brokers-stop:
	bash scripts/brokers.sh stop

brokers-status:
	bash scripts/brokers.sh status

# The README's first command until `nerve demo` exists: the example city rules, tested and replayed.
replay:
	bash scripts/replay.sh
