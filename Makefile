# Test and local-broker commands; the scripts under scripts/ say what they do and which variables they read.

.PHONY: test demo replay brokers-start brokers-stop brokers-status

# make test PYTEST_ARGS="-k smoke -x" passes arguments on to pytest.
test:
	bash scripts/test.sh $(PYTEST_ARGS)

brokers-start:
	bash scripts/brokers.sh start

brokers-stop:
	bash scripts/brokers.sh stop

brokers-status:
	bash scripts/brokers.sh status

# The README's first command: the whole arc on one machine, the scenarios that fire within a minute.
# make demo DEMO_ARGS= runs every scenario (flooding, entrapment, a silent gateway: about fifteen minutes).
DEMO_ARGS ?= --quick
demo:
	bash scripts/demo.sh $(DEMO_ARGS)

# The example city rules, tested and replayed through both tiers, no brokers needed.
replay:
	bash scripts/replay.sh
