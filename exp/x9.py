from rust_heads import *
dev=load('dev_routing'); Ed=E('dev_routing')
exam,pchat,prior=parts(dev,Ed)
for d in [0.05,0.1,0.15,0.2,0.3]:
    report(dev,exam+d*pchat,f'add d={d}')
for d in [0.1,0.2]:
    for p in [2,4]:
        report(dev,exam+d*pchat**p,f'add pow{p} d={d}')
