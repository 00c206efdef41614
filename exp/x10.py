from rust_heads import *
dev=load('dev_routing'); Ed=E('dev_routing')
exam,pchat,prior=parts(dev,Ed)
isA=np.array([r['source']=='arena-bench-v1' for r in dev])
print('arena pchat>0.5:', (pchat[isA]>0.5).mean(), 'mmlu', (pchat[~isA]>0.5).mean())
for cp in [0.2,0.25,0.3,0.35]:
    for k in [0.0,0.1,0.3]:
        report(dev,np.where(pchat>0.5,cp+k*exam,exam),f'hard cp={cp} k={k}')
report(dev,np.where(isA,0.3,exam),'oracle-source const 0.3')
