from predict.cli import main

main()
