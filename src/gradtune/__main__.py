from gradtune.commands import main

main()
