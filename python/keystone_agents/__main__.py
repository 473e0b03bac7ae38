from keystone_agents.cli.agent import main

main()
