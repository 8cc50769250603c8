from featurecache.cli import main

main()
