from medseg_runtime.cli import main

main()
