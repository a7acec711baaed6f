// gwbench: thin entry point; the load generator lives in GatewayBench.
GWBench.main()
