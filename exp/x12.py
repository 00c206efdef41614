from rust_heads import *
dev=load('dev_routing'); Ed=E('dev_routing')
exam,pchat,prior=parts(dev,Ed)
report(dev,exam,'exam only')
for d in [0.05,0.1,0.15]: report(dev,exam+d*pchat,f'add d={d}')
