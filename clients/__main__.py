from clients.cli import main
import sys
sys.exit(main())
