from gradtune.cli import main

main()
