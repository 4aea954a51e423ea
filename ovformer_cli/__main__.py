from ovformer_cli.app import main

main()
